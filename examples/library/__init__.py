"""The tutorial's library: books lent to members, from aggregate to queried view.

Built step by step in ``docs/tutorial.md``; each file here is one step.
"""
