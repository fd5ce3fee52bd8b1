"""Twin: the synthetic Gulf of Lion world, its stores in the real archives' layouts, and its truth.

May import: only twin (the generator stays independent of the model); the skill ceiling alone may
score with learning and mooring.
"""
