"""library: books lent to members, from aggregate to queried view.

A sample to make your own: cqrskit's tutorial walks through it, one module a step.
"""
