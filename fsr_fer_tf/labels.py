"""The canonical 7-class expression order and the mappings onto it.

Every label inside fsr_fer_tf is an index into `CLASS_NAMES`, RAF-DB's own
order (its label file uses 1..7 for these names). Each data source maps its ids
or folder names here once, when it is read.
"""

CLASS_NAMES = (
    "surprise",
    "fear",
    "disgust",
    "happiness",
    "sadness",
    "anger",
    "neutral",
)
NUM_CLASSES = len(CLASS_NAMES)

# RAF-DB basic `EmoLabel/list_patition_label.txt`: ids 1..7 in CLASS_NAMES order.
RAFDB_IDS = {i + 1: i for i in range(NUM_CLASSES)}

# FER2013 `emotion` column: 0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad,
# 5 Surprise, 6 Neutral.
FER2013_IDS = {0: 5, 1: 2, 2: 1, 3: 3, 4: 4, 5: 0, 6: 6}

# Folder names seen in expression datasets (lower case) -> canonical index.
SYNONYMS = {
    "surprise": 0,
    "surprised": 0,
    "suprise": 0,
    "fear": 1,
    "fearful": 1,
    "afraid": 1,
    "scared": 1,
    "disgust": 2,
    "disgusted": 2,
    "happiness": 3,
    "happy": 3,
    "joy": 3,
    "sadness": 4,
    "sad": 4,
    "anger": 5,
    "angry": 5,
    "neutral": 6,
}

# Classes some datasets have that are not among the 7 basic ones.
OUTSIDE_THE_SEVEN = ("contempt", "unknown", "none", "uncertain", "non-face")


def canonical_index(name):
    """Maps a class name (any case, common synonyms) to its canonical index.

    Args:
        name: a class name such as "Happy", "angry" or "surprise".

    Returns:
        The index into `CLASS_NAMES`, or None when the name is not one of the
        seven basic expressions (e.g. "contempt").
    """
    return SYNONYMS.get(name.strip().lower())
