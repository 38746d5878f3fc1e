"""The steps of sdc-migrate's procedures, by what they touch.

Each step is a function of the procedure's context (the migration: its
report r, its nodes src and dst, its options, its procedure proc) and each
undo a function of the context and the arguments its change was journaled
with. commands/migrate.py and commands/rollback.py put them in order.
"""
