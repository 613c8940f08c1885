"""Create the console role groups (`console:<role>`) with their `console.*` permissions."""

from django.db import migrations

from apps.console.roles import PERMISSIONS, ROLE_PERMISSIONS, group_name


def create_groups(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    content_type, _ = ContentType.objects.get_or_create(app_label="console", model="consolepermissions")
    perms = {}
    for codename, name in PERMISSIONS.items():
        perms[codename], _ = Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name})
    for role, codenames in ROLE_PERMISSIONS.items():
        if not codenames:
            continue  # customers hold no console rights: no group
        group, _ = Group.objects.get_or_create(name=group_name(role))
        group.permissions.add(*[perms[code] for code in codenames])


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__startswith="console:").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("console", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(create_groups, remove_groups)]
