"""The worker's web views without the web framework: access checks and answers as ``Reply``.

``pipeline/app.py`` wires them into Faust views; tests call them directly.
"""
