"""The built-in fact world: real countries and invented people, their facts and edit cases.

``relations`` (relations and prompt templates), ``data`` (hand-written seed facts), ``generate``
(the seeded world and its training corpus), ``records`` (edit cases with every probe group) and
``train_default`` (the training of the shipped default model on the world).
"""
