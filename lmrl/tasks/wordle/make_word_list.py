"""How lmrl/tasks/wordle/words.txt was made (run once; the list is committed).

The most frequent 5-letter English words by `wordfreq` (pip install wordfreq), kept only when they
appear in lower case in a spelling dictionary (Debian's `wamerican`, /usr/share/dict/american-english),
which drops names and abbreviations that a frequency list contains (e.g. "henri", "tibet"). Plurals
and inflections stay: they are valid guesses.

    python lmrl/tasks/wordle/make_word_list.py 2000 > lmrl/tasks/wordle/words.txt
"""

import sys

from wordfreq import top_n_list


def main(count: int) -> None:
    with open("/usr/share/dict/american-english", encoding="utf-8") as handle:
        dictionary = {line.strip() for line in handle}
    words = []
    for word in top_n_list("en", 200_000):
        if len(word) == 5 and word.isascii() and word.isalpha() and word.islower() and word in dictionary:
            words.append(word)
            if len(words) == count:
                break
    print("\n".join(words))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
