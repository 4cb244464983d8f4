"""The dispatch's keys to configuration rows lose their database constraint.

An intervention's campaign, cycle, rule, offer and template, and a coupon's offer, are checked
by Django (PROTECT refuses a delete, SET_NULL clears the template) rather than by PostgreSQL,
which checked each deferred key row by row at commit: 2.7 s of a 188,000-intervention
dispatch's 7.3 s COMMIT at 1M customers. The customer and intervention keys keep theirs.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0012_uplift_targeting'),
    ]

    operations = [
        migrations.AlterField(
            model_name='coupon',
            name='offer',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='coupons', to='campaigns.offer'),
        ),
        migrations.AlterField(
            model_name='intervention',
            name='campaign',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='interventions', to='campaigns.campaign'),
        ),
        migrations.AlterField(
            model_name='intervention',
            name='cycle',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='interventions', to='campaigns.campaigncycle'),
        ),
        migrations.AlterField(
            model_name='intervention',
            name='offer',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, to='campaigns.offer'),
        ),
        migrations.AlterField(
            model_name='intervention',
            name='rule',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='interventions', to='campaigns.rule'),
        ),
        migrations.AlterField(
            model_name='intervention',
            name='template',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, to='campaigns.messagetemplate'),
        ),
    ]
