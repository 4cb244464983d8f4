"""The staff roles as groups (campaigns.roles): "crm staff", "analysts" and the agents' group,
with their permissions, on a fresh database too (the permissions are created here first, since
Django otherwise creates them only after the whole migrate)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from campaigns.roles import roles_apply


def roles_create(apps, schema_editor):
    using = schema_editor.connection.alias
    for app_config in apps.get_app_configs():
        # create_permissions skips apps without a models module; historical app configs have
        # none, so mark each one for the call, then put back what it had.
        previous = getattr(app_config, "models_module", None)
        app_config.models_module = previous or True
        try:
            create_permissions(app_config, apps=apps, verbosity=0, using=using)
        finally:
            app_config.models_module = previous
    roles_apply(
        group_model=apps.get_model("auth", "Group"),
        permission_model=apps.get_model("auth", "Permission"),
        using=using,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0004_response_key_per_client"),
        ("customers", "0006_consent_received_at"),
        ("scoring", "0005_scoring_chunks"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(roles_create, migrations.RunPython.noop)]
