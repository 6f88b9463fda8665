"""``distillwatch investigate``: one account or one campaign, from the rollups (docs/forensics.md)."""
