"""Console pages, one module per area; :mod:`soma.console.routes` assembles them."""
