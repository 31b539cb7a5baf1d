"""Question strategies that need no trained component: each a row of the evaluation table.

`ireid.app.strategies` builds them, and the ones that load trained parts, by name.
"""
