"""The demo: its data files (sources.json + campaigns.json for the UCI shop, telco.json +
telco_campaigns.json for the second example, data/), the synthetic contacts stage, the simulator
of synthetic outcomes and its cycle stage. Nothing of it runs in production; the product apps
never import it."""
