"""The pipeline: recipes (lists of passes, ``recipes``), running them (``runner``), the accuracy search that drives
a recipe's build passes (``accuracy``), what a run reports (``reports``) and the entry points (``api``)."""
