"""Reports: storage reads only, and the services both front ends call (the API's routes and
the dashboard). ``traffic`` (the traffic report: grouping, checked query, rows and totals,
CSV columns; the counting is ``app/traffic/counts.py``), ``orders`` (Live Order Tracking),
``income`` (income by period), ``overview``, ``ranges`` (the days or periods a report
covers), ``exports`` (the CSV downloads) and ``csvout`` (the CSV they are written as)."""
