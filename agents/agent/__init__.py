"""Long-lived agents: ``core`` (``Agent.create/open/open_or_create``, ``step``), ``state``
(the persisted agent row and its lease), ``types``, ``context`` (what goes to the model each
turn) and ``summary`` (the running summary of evicted turns).

Rules this package keeps: an agent survives restarts (its state is in the store); it reaches
memory through the tools of ``agents.tools``, never around them. Nothing is re-exported
(``agents`` re-exports ``Agent``).
"""
