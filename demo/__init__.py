"""The demo: its data files (sources.json, campaigns.json, data/), the simulator of synthetic
outcomes and its cycle stage. Nothing of it runs in production; the product apps never import it."""
