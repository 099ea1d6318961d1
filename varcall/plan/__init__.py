"""Before any calling: inputs, validation, region planning."""
