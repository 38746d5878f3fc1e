"""sdc-migrate: move instances between the compute nodes of a Triton DataCenter."""
__version__ = "0.1.0"
