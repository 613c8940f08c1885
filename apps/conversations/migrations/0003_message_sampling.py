"""Message.sampling: the sampling parameters a reply is generated with (pack defaults + request overrides)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("conversations", "0002_memory_feedback_handoff"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="sampling",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
