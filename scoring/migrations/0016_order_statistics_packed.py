"""Order statistics as one packed record per customer (scoring.services.statistics.PACKED)
instead of a column each: a chunk gathers 50,000 records as one value. The table is a cache
(scoring.models.OrderStatistics): it is emptied, and the next run computes every customer's
statistics from the orders, as on a first night."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("scoring", "0015_scores_reasons_as_json"),
    ]

    operations = [
        migrations.RunSQL("DELETE FROM scoring_orderstatistics", migrations.RunSQL.noop),
        migrations.RemoveField(model_name="orderstatistics", name="orders_all"),
        migrations.RemoveField(model_name="orderstatistics", name="orders_refunded"),
        migrations.RemoveField(model_name="orderstatistics", name="orders_cancelled"),
        migrations.RemoveField(model_name="orderstatistics", name="orders_completed"),
        migrations.RemoveField(model_name="orderstatistics", name="revenue"),
        migrations.RemoveField(model_name="orderstatistics", name="items"),
        migrations.RemoveField(model_name="orderstatistics", name="discount"),
        migrations.RemoveField(model_name="orderstatistics", name="gross"),
        migrations.RemoveField(model_name="orderstatistics", name="orders_30d"),
        migrations.RemoveField(model_name="orderstatistics", name="revenue_30d"),
        migrations.RemoveField(model_name="orderstatistics", name="orders_90d"),
        migrations.RemoveField(model_name="orderstatistics", name="revenue_90d"),
        migrations.RemoveField(model_name="orderstatistics", name="orders_365d"),
        migrations.RemoveField(model_name="orderstatistics", name="revenue_365d"),
        migrations.RemoveField(model_name="orderstatistics", name="revenue_prev_90d"),
        migrations.RemoveField(model_name="orderstatistics", name="first_order_ns"),
        migrations.RemoveField(model_name="orderstatistics", name="first_completed_ns"),
        migrations.RemoveField(model_name="orderstatistics", name="last_completed_ns"),
        migrations.RemoveField(model_name="orderstatistics", name="occasions"),
        migrations.RemoveField(model_name="orderstatistics", name="gaps"),
        migrations.RemoveField(model_name="orderstatistics", name="gap_sum"),
        migrations.RemoveField(model_name="orderstatistics", name="gap_sq"),
        migrations.AddField(
            model_name="orderstatistics",
            name="packed",
            field=models.BinaryField(default=b""),
            preserve_default=False,
        ),
        # Going back: emptied first, so the columns can come back NOT NULL.
        migrations.RunSQL(migrations.RunSQL.noop, "DELETE FROM scoring_orderstatistics"),
    ]
