"""A small question set of the project's own making for retrieval quality: 30 short documents
(each one chunk: under the embedding model's 254 tokens) on distinct subjects, some of them
neighbours on purpose (bread and cake, tea and coffee, volcanoes and earthquakes), and 45
questions, each answered by exactly one document. Written for Cinder's benchmarks; public
domain."""

DOCS = {
    "bread": "To bake bread, mix flour, water, salt and yeast, knead the dough for ten minutes, "
             "let it rise until doubled, shape the loaf and bake it in a hot oven until the crust "
             "is brown and the bottom sounds hollow.",
    "cake": "A sponge cake gets its lightness from eggs whisked with sugar until pale and thick; "
            "the flour is folded in gently so the air stays, and the batter goes into a moderate "
            "oven straight away.",
    "tea": "Green tea is best brewed with water around eighty degrees Celsius for two to three "
           "minutes; boiling water scalds the leaves and makes the cup bitter.",
    "coffee": "Espresso is made by forcing hot water at about nine bars of pressure through "
              "finely ground, tightly packed coffee for twenty-five to thirty seconds.",
    "volcano": "Volcanoes form where magma reaches the surface. Runny basaltic lava builds broad "
               "shield volcanoes such as Mauna Loa, while sticky magma rich in silica erupts "
               "explosively.",
    "earthquake": "Earthquakes happen when stress built up along a fault is released suddenly; "
                  "the energy travels as seismic waves, and magnitude is measured on a "
                  "logarithmic scale.",
    "photosynthesis": "In photosynthesis, plants use sunlight captured by chlorophyll to turn "
                      "carbon dioxide and water into glucose, releasing oxygen as a by-product.",
    "tides": "Tides are caused mainly by the Moon's gravity pulling on the oceans; when the Sun "
             "and Moon line up, the range is largest, which is called a spring tide.",
    "chess": "In chess the Sicilian Defence answers the move 1.e4 with 1...c5, fighting for the "
             "centre from the side and leading to sharp, unbalanced positions.",
    "bicycle": "To fix a flat bicycle tyre, remove the wheel, lever the tyre off the rim, find "
               "the hole in the inner tube, patch it or fit a new tube, and pump it back up.",
    "python": "In Python a list comprehension builds a new list from an iterable in one "
              "expression, such as squares = [x * x for x in range(10)].",
    "rust": "Rust's borrow checker enforces at compile time that a value has either one mutable "
            "reference or any number of shared references, which prevents data races.",
    "git": "git rebase replays your commits on top of another branch, giving a linear history, "
           "while git merge joins the histories with a merge commit.",
    "sleep": "Adults generally need seven to nine hours of sleep a night; regular bedtimes and "
             "a dark, cool room help the body keep its circadian rhythm.",
    "marathon": "A marathon is 42.195 kilometres long; the distance was fixed at the 1908 London "
                "Olympics so the race could finish in front of the royal box.",
    "jupiter": "Jupiter is the largest planet in the Solar System, a gas giant whose Great Red "
               "Spot is a storm larger than Earth that has raged for centuries.",
    "mars": "Mars looks red because iron minerals in its dust have oxidised; it has the tallest "
            "volcano in the Solar System, Olympus Mons.",
    "honey": "Bees make honey by collecting nectar, adding enzymes and fanning it with their "
             "wings until most of the water evaporates, then sealing it in wax cells.",
    "origami": "The traditional origami crane starts from a square sheet folded into a bird "
               "base; the neck and tail are inside-reverse folds.",
    "piano": "A piano makes sound when a felt hammer strikes steel strings; the sustain pedal "
             "lifts the dampers so the strings keep ringing.",
    "vaccines": "Vaccines train the immune system by presenting a harmless form of a pathogen "
                "or its antigen, so memory cells respond quickly to a later infection.",
    "compost": "Good compost needs a mix of green nitrogen-rich material and brown carbon-rich "
               "material, some moisture, and turning now and then to let air in.",
    "lighthouse": "Lighthouses use Fresnel lenses, rings of prisms that bend light into a "
                  "strong horizontal beam visible many kilometres out to sea.",
    "glaciers": "Glaciers form where more snow falls in winter than melts in summer; the snow "
                "compacts into ice that flows slowly downhill under its own weight.",
    "penguins": "Emperor penguins breed in the Antarctic winter; the males balance the egg on "
                "their feet for about two months without eating.",
    "sourdough": "A sourdough starter is a culture of wild yeast and lactic acid bacteria fed "
                 "with flour and water; it leavens bread and gives it a tangy flavour.",
    "tennis": "In tennis, a game is scored love, fifteen, thirty, forty; from deuce a player "
              "must win two points in a row to take the game.",
    "recycling": "Aluminium cans can be recycled again and again without losing quality, and "
                 "recycling one saves most of the energy needed to make a new can from ore.",
    "moon_landing": "Apollo 11 landed on the Moon on 20 July 1969; Neil Armstrong and Buzz "
                    "Aldrin walked on the surface while Michael Collins orbited above.",
    "wine": "Red wine gets its colour from grape skins left in the juice during fermentation; "
            "white wine is usually pressed off the skins first.",
}

QUESTIONS = [
    ("How long should I knead bread dough?", "bread"),
    ("What makes a sponge cake light?", "cake"),
    ("What water temperature is right for green tea?", "tea"),
    ("Why does my green tea taste bitter?", "tea"),
    ("How much pressure does an espresso machine use?", "coffee"),
    ("Which kind of magma makes explosive eruptions?", "volcano"),
    ("What causes an earthquake?", "earthquake"),
    ("How is earthquake magnitude measured?", "earthquake"),
    ("What gas do plants give off when they make sugar from sunlight?", "photosynthesis"),
    ("What is a spring tide?", "tides"),
    ("Why does the sea rise and fall twice a day?", "tides"),
    ("What is Black's usual reply to 1.e4 in the Sicilian?", "chess"),
    ("How do I repair a puncture on my bike?", "bicycle"),
    ("How can I build a list of squares in one line of Python?", "python"),
    ("How does Rust prevent data races?", "rust"),
    ("What is the difference between rebase and merge?", "git"),
    ("How many hours of sleep does an adult need?", "sleep"),
    ("Why is a marathon 42 kilometres long?", "marathon"),
    ("What is the Great Red Spot?", "jupiter"),
    ("Which is the biggest planet?", "jupiter"),
    ("Why is Mars red?", "mars"),
    ("Where is Olympus Mons?", "mars"),
    ("How do bees turn nectar into honey?", "honey"),
    ("How do you fold a paper crane?", "origami"),
    ("What does the sustain pedal on a piano do?", "piano"),
    ("How do vaccines protect against disease?", "vaccines"),
    ("What should go into a compost heap?", "compost"),
    ("How does a lighthouse make its beam so bright?", "lighthouse"),
    ("How do glaciers form?", "glaciers"),
    ("Which penguin keeps its egg on its feet all winter?", "penguins"),
    ("What gives sourdough its sour taste?", "sourdough"),
    ("How do I keep a sourdough starter alive?", "sourdough"),
    ("How is a tennis game scored?", "tennis"),
    ("What happens at deuce in tennis?", "tennis"),
    ("Can aluminium cans be recycled forever?", "recycling"),
    ("Who walked on the Moon in 1969?", "moon_landing"),
    ("Who stayed in orbit during Apollo 11?", "moon_landing"),
    ("Why is red wine red?", "wine"),
    ("What shape are the lenses in a lighthouse?", "lighthouse"),
    ("What should I do before I shape and bake a loaf?", "bread"),
    ("How long does an espresso shot take to pull?", "coffee"),
    ("What kind of volcano is Mauna Loa?", "volcano"),
    ("What pigment do plants use to capture light?", "photosynthesis"),
    ("What is a shield volcano made of?", "volcano"),
    ("Which immune cells remember an infection?", "vaccines"),
]
