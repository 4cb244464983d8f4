from scoring.ml.phrases import describe


def test_templates_and_generic_phrases():
    assert describe(name="tenure", value=2.0, templates={"tenure": "tenure {value:g} months"}) == (
        "tenure 2 months"
    )
    assert describe(name="days_since_event_complaint", value=4.0) == "last complaint 4 days ago"
    assert describe(name="MonthlyCharges", value=99.5, reference=70.35) == (
        "MonthlyCharges 99.50 (typical 70.35)"
    )
    assert describe(name="attr_plan", value="gold", categorical=True) == "plan is gold"
    assert describe(name="recency_days", value=float("nan")) == "no completed order yet"
    assert describe(name="orders_90d", value=1.0) == "only 1 order in the last 90 days"
    assert describe(name="interorder_mean_days", value=float("nan")) == "fewer than two orders"
    # A template that does not fit the value falls back to the built-in phrase.
    assert describe(name="tenure_days", value="x", templates={"tenure_days": "{value:.1f}"}) == (
        "customer since an unknown date"
    )
