"""Pure report builders: rows in, CSV/XML streams or Plotly figures out. No Flask, no SQL."""
