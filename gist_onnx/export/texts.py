"""The built-in texts that every exported graph is checked on.

Varied on purpose: short queries, sentences, paragraphs past the truncation limit, accents, CJK
(ideographs past the Basic Multilingual Plane too), Arabic, Greek capitals, emoji and ZWJ
sequences, punctuation only, odd whitespace, repeated words, code, URLs, the empty string.
"""

from __future__ import annotations

_LONG = (
    "The committee met on Tuesday to review the proposal for the new library, which had been "
    "under discussion for nearly three years. Several members raised concerns about the cost of "
    "construction, the location near the river, and the impact on traffic in the old town. "
    "Others argued that the existing building was too small, poorly heated and inaccessible to "
    "people in wheelchairs, and that every year of delay made the eventual project more "
    "expensive. After a long debate the committee voted seven to four to commission a detailed "
    "study of two alternative sites, with a report due before the end of the autumn session. "
)

# Scripts that JavaScript's tokenizers read differently unless the web export corrects them:
# capital sigma, which JavaScript lowercases to a final sigma at a word's end, and ideographs
# outside the Basic Multilingual Plane, which transformers.js does not split one by one.
SCRIPT_TEXTS: tuple[str, ...] = (
    "ΟΔΟΣ ΤΕΛΟΣ ΚΟΣΜΟΣ",
    "ΣΙΣΥΦΟΣ και Σίσυφος: ΣΟΦΟΣ.",
    "𠀀𠀁𪜀 漢字",
    "古文𠀋𡈽𢀀之書 and 𫝀 in a sentence",
)

PARITY_TEXTS: tuple[str, ...] = (
    # short queries
    "hello",
    "weather tomorrow",
    "how to bake sourdough bread",
    "What is the capital of France?",
    "python list comprehension",
    "a",
    # sentences
    "A man is playing a guitar on the street corner.",
    "The quick brown fox jumps over the lazy dog.",
    "Global temperatures have risen by about 1.1 degrees Celsius since pre-industrial times.",
    "She didn't know whether to laugh or cry when the results came in.",
    "Stocks fell sharply on Monday after the central bank raised interest rates.",
    # paragraphs, one far past 256 tokens
    _LONG,
    _LONG * 4,
    " ".join(f"item{i}" for i in range(600)),
    # accents and other scripts
    "Café crème brûlée à la française, déjà vu, naïve façade.",
    "Zürich, São Paulo, Kraków, Reykjavík and Ångström.",
    "東京は日本の首都です。人口は約1400万人です。",
    "机器学习是人工智能的一个分支。",
    "서울은 대한민국의 수도입니다.",
    "مرحبا بالعالم، كيف حالك اليوم؟",
    "Привет, как дела? Всё хорошо.",
    "नमस्ते दुनिया",
    *SCRIPT_TEXTS,
    # emoji and ZWJ sequences
    "I love pizza 🍕🍕🍕!",
    "👨‍👩‍👧‍👦 family time 🏳️‍🌈 ❤️‍🔥",
    "🙂",
    # punctuation only, odd whitespace, empty
    "?!...;;;---",
    "((()))[[]]{{}}",
    "",
    "   ",
    "\t\ttabs\tand\nnew\nlines\r\n",
    "  leading and trailing spaces  ",
    "non\u00a0breaking\u2003em\u2009thin spaces",
    "zero\u200bwidth\u200cjoiners\u200d",
    # repetition
    "the the the the the the the the the the",
    "buffalo " * 40,
    # code and URLs
    "def add(a, b):\n    return a + b",
    "SELECT name, COUNT(*) FROM users WHERE age > 30 GROUP BY name;",
    '<div class="main"><p>Hello &amp; welcome</p></div>',
    "https://example.com/path/to/page?query=embedding&lang=en#section-2",
    "Contact us at support@example.org or call +1 (555) 123-4567.",
    # numbers and mixed case
    "3.14159 2.71828 1.41421 1,000,000 1e-9",
    "ALL CAPS SHOUTING TEXT",
    "MiXeD CaSe WoRdS",
)

# Texts whose activations size the int8 graph's smoothing factors. Kept apart from PARITY_TEXTS so
# that the check is not made on the texts the recipe was fitted to.
CALIBRATION_TEXTS: tuple[str, ...] = (
    "Where can I find a cheap hotel near the train station?",
    "symptoms of vitamin d deficiency",
    "best hiking trails in the alps",
    "How do I reset my password?",
    "convert celsius to fahrenheit",
    "Who wrote Pride and Prejudice?",
    "The children were playing in the park while their parents watched from a bench.",
    "A woman is slicing tomatoes in the kitchen.",
    "Two dogs are running through a field of tall grass.",
    "The government announced new measures to reduce air pollution in large cities.",
    "Researchers found that regular exercise improves memory in older adults.",
    "The match was postponed because of heavy rain.",
    "He forgot his umbrella at the office and got soaked on the way home.",
    "The museum will be closed for renovation until next spring.",
    "Oil prices climbed after the report showed lower inventories than expected.",
    "The new phone has a larger screen, a faster processor and a better camera.",
    "Please submit your application before the deadline on Friday.",
    "The recipe calls for two cups of flour, one egg and a pinch of salt.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The treaty was signed in 1648, ending thirty years of war in central Europe.",
    "Customers complained that the delivery arrived two weeks late and the box was damaged.",
    "Our quarterly revenue grew by twelve percent, driven mainly by subscriptions.",
    "The defendant pleaded not guilty to all charges.",
    "A small earthquake shook the coastal town early this morning; no injuries were reported.",
    "The algorithm sorts the list in place and runs in O(n log n) time on average.",
    "To install the package, run pip install and then restart the kernel.",
    "for i in range(10):\n    print(i * i)",
    "git commit -m 'fix off-by-one error in pagination'",
    "https://www.wikipedia.org/wiki/Natural_language_processing",
    "Meeting notes: budget approved; hiring freeze lifted; next review in March.",
    "Ingredients: butter, sugar, vanilla, baking soda, chocolate chips.",
    "Le chat dort sur le canapé pendant que la pluie tombe.",
    "Der Zug nach Berlin hat zwanzig Minuten Verspätung.",
    "El mercado abre a las ocho de la mañana todos los días.",
    "北京是中国的首都，有很多历史古迹。",
    "今日はとても暑いので、冷たい飲み物が欲しいです。",
    "أحب القراءة في المساء قبل النوم.",
    "Это очень интересная книга о космосе.",
    "Wow!!! That was AMAZING 😂😂",
    "ok",
    "...",
    "No.",
    "Terms and conditions apply. See store for details.",
    "The patient presented with fever, cough and shortness of breath for three days.",
    "Shares of the company rose 5% in after-hours trading following the earnings call.",
    "The spacecraft entered orbit around Mars after a seven-month journey.",
    "Volunteers planted more than two thousand trees along the river bank.",
    "She practiced the piano every evening and finally passed the conservatory audition.",
    "The bridge, built in the nineteenth century, is one of the oldest in the region, and "
    "engineers have warned for years that its foundations are weakening. The city council has "
    "now approved funding to strengthen the piers, replace the deck and add a lane for cyclists, "
    "although residents worry about the months of traffic diversions that the work will bring.",
    "In mathematics, a prime number is a natural number greater than one that has no positive "
    "divisors other than one and itself. The distribution of primes among the natural numbers "
    "has been studied for centuries, and many questions about it, such as the twin prime "
    "conjecture, remain open despite the efforts of generations of mathematicians.",
    "error: cannot find symbol\n  symbol: variable count\n  location: class Main",
    "ERROR 404: page not found",
    "Q: Is the store open on Sundays? A: Yes, from 10 am to 4 pm.",
    "lol same",
    "I'm not sure I agree with that, but I see your point.",
    "The orchestra performed Beethoven's ninth symphony to a sold-out hall.",
    "Flight 237 to Lisbon is now boarding at gate 14.",
    "The tenant must give sixty days' written notice before moving out.",
    "Mix the paint thoroughly and apply two thin coats, letting each dry for four hours.",
    "The striker scored twice in the second half to secure the title.",
)

# Paragraphs in scripts the calibration texts do not cover, for the int8 recipe: smoothing the
# first layer's FFN down-projection input took these to a cosine of 0.989
# (benchmarks/results/INT8.md).
CJK_PARAGRAPHS = (
    "自然语言处理是人工智能的一个重要领域。它研究如何让计算机理解和生成人类语言。"
    "近年来，基于深度学习的方法取得了很大进展，" * 6,
    "自然言語処理は人工知能の重要な分野です。コンピュータが人間の言語を理解し、生成する方法を研究"
    "します。近年、深層学習に基づく手法が大きく進歩しました。" * 5,
    "자연어 처리는 인공지능의 중요한 분야입니다. 컴퓨터가 인간의 언어를 이해하고 생성하는 방법을 "
    "연구합니다. 최근 딥러닝 기반 방법이 크게 발전했습니다. " * 6,
)
