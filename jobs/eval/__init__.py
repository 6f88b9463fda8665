"""``distillwatch eval``: measure detection quality on a labelled, generated scenario.

``scenario`` writes the input, ``replay_child`` runs ``distillwatch replay`` on it,
``metrics`` scores REPORT.json against the labels (pure), ``table`` prints the result,
``run`` ties them together. See docs/evaluation.md.
"""
