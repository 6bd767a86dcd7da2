"""Reports: traffic (``app/traffic/counts.py``), Live Order Tracking, income by period, the
overview, and the CSV they are exported as. Storage reads only; the API and the dashboard
render them."""
