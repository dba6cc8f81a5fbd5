"""Word -> label pairs the related-word threshold is measured on (README "Search").

Words here are *not* label names or aliases of the catalogue (those match directly, with no
model); each pair says which label the word should (``POSITIVE``) or should not
(``NEGATIVE``) bring through the text model. ``bench/search.py --pairs`` prints recall and
precision over these pairs for several thresholds; ``tests/model/test_text_embedding.py``
checks the chosen threshold still gets the results written in the README.
"""

from __future__ import annotations

POSITIVE: tuple[tuple[str, str], ...] = (
    ("pup", "Dog"),
    ("doggy", "Dog"),
    ("doggie", "Dog"),
    ("kitty-cat", "Cat"),
    ("sedan", "Car"),
    ("shore", "Shoreline"),
    ("coastline", "Shoreline"),
    ("woman", "Person"),
    ("notebook", "Laptop"),
    ("tree", "Forest"),
    ("snowy", "Snow"),
    ("sailboat", "Boat"),
    ("lamb", "Sheep"),
    ("parrot", "Bird"),
    ("seagull", "Bird"),
    ("shark", "Great White Shark"),
    ("skyscraper", "Building"),
    ("pony", "Horse"),
    ("hill", "Mountain"),
)

NEGATIVE: tuple[tuple[str, str], ...] = (
    ("duck", "Platypus"),
    ("bull", "Bullfrog"),
    ("house", "Cinema"),
    ("rose", "Rose Hip"),
    ("pooch", "Toy Poodle"),
    ("sunset", "Night"),
    ("child", "Toy"),
    ("pasta", "Spaghetti Squash"),
    ("doggy", "Hot Dog"),
    ("pup", "Cat"),
    ("kitty-cat", "Lesser Panda"),
    ("tree", "Tree Frog"),
    ("snowy", "Snowplow"),
    ("lamb", "Bighorn"),
    ("sedan", "Race Car"),
    ("coastline", "Lake"),
    ("seagull", "Sea Lion"),
    ("skyscraper", "Water Tower"),
)
