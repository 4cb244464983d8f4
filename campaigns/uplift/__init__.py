"""Pure uplift statistics and uplift models for campaigns: numpy/scipy/pandas only, no Django.

`proportions`, `means` and `economics` measure a randomised campaign (treated vs control),
`breakdown` and `report` turn outcome cells into the typed uplift report, `power` sizes the
holdout, `models` ranks customers by predicted uplift. The ORM bridge is campaigns.measurement.
"""
