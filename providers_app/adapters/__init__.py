"""Provider adapters: one per provider type behind the interface in ``base.py``."""
