"""On PostgreSQL, the database itself refuses to change the audit chain.

A trigger raises on UPDATE or DELETE of an audit record and on any move backwards (or removal) of the
chain head, whoever the role. Where the app connects as a role that is not a superuser, its UPDATE,
DELETE and TRUNCATE privileges on the records are revoked as well. TRUNCATE is left to privileges, not
to a trigger, because test databases are emptied with TRUNCATE between transactional tests.
SQLite (the embedded default) keeps the ORM-level guard only.
"""

from django.db import migrations

GUARD_SQL = """
CREATE OR REPLACE FUNCTION audit_record_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit records are append-only: % of record % refused', TG_OP, OLD.seq
    USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_auditrecord_append_only BEFORE UPDATE OR DELETE ON audit_auditrecord
  FOR EACH ROW EXECUTE FUNCTION audit_record_refuse_change();

CREATE OR REPLACE FUNCTION audit_head_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'the audit chain head cannot be deleted' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NEW.seq <= OLD.seq THEN
    RAISE EXCEPTION 'the audit chain head only moves forward (#% to #%)', OLD.seq, NEW.seq
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER audit_chainhead_forward_only BEFORE UPDATE OR DELETE ON audit_chainhead
  FOR EACH ROW EXECUTE FUNCTION audit_head_forward_only();

DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'REVOKE UPDATE, DELETE, TRUNCATE ON audit_auditrecord FROM PUBLIC, ' || quote_ident(current_user);
  END IF;
END $$;
"""

UNGUARD_SQL = """
DROP TRIGGER IF EXISTS audit_auditrecord_append_only ON audit_auditrecord;
DROP FUNCTION IF EXISTS audit_record_refuse_change();
DROP TRIGGER IF EXISTS audit_chainhead_forward_only ON audit_chainhead;
DROP FUNCTION IF EXISTS audit_head_forward_only();
"""


def guard(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(GUARD_SQL, params=None)


def unguard(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(UNGUARD_SQL, params=None)


class Migration(migrations.Migration):

    dependencies = [
        ("audit", "0002_chain_seal_subject_keys"),
    ]

    operations = [
        migrations.RunPython(guard, unguard),
    ]
