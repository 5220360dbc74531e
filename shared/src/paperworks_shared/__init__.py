"""paperworks-shared: what two or more paperworks packages really share."""

__version__ = "0.1.0"
