"""Campaign measurement, the ORM-to-arrays bridge of the uplift report: `outcomes` (the SQL of
both arms' outcomes), `snapshots` (measure and store the daily UpliftReport rows) and `export`
(the assignment log with outcomes as CSV). The statistics live in campaigns.uplift."""
