"""LightningModules: one system per paper, around parts they are given."""
