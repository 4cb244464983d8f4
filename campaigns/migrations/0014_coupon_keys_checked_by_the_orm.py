"""A coupon's customer and intervention keys lose their database constraint.

The dispatch is the only writer of coupons: it inserts each with the customer and the id of the
intervention it inserted in the same transaction (the intervention keeps its customer
constraint). PostgreSQL checked both deferred keys row by row at commit, locking each customer
and intervention row: the dispatch's COMMIT took 11.6 s with them and 7.8 s without, for 188,213
interventions and their coupons at 1M customers (the 2026-11-30 machine). The ORM still cascades
deletes to coupons.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0013_dispatch_keys_checked_by_the_orm'),
        ('customers', '0013_order_placed_brin'),
    ]

    operations = [
        migrations.AlterField(
            model_name='coupon',
            name='customer',
            field=models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.CASCADE, related_name='coupons', to='customers.customer'),
        ),
        migrations.AlterField(
            model_name='coupon',
            name='intervention',
            field=models.OneToOneField(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='coupon', to='campaigns.intervention'),
        ),
    ]
