"""The embedded demo dataset: a seeded synthetic catalog with text and users whose sequences
follow planted structure, so that a sequential model can clearly beat popularity.

Structure: a three-level category tree; brands that belong to a top category; titles built
from brand, adjective and the leaf category's nouns. Every item has one to three co-purchase
successors in its subcategory (the planted chains). A user has one or two favourite top
categories; each next item is the previous item's successor (55 %), another item of the same
subcategory (25 %), or a popular item of the user's tastes (20 %); popularity is Zipf-skewed.
"""

from __future__ import annotations

import random

from .dataset import DataReport, Dataset, ItemText

TOPS = {
    "Skin Care": {"Face": ["Cleanser", "Serum", "Toner"], "Body": ["Lotion", "Scrub", "Body Oil"],
                  "Sun": ["Sunscreen", "After-Sun Gel", "Tinted SPF"], "Eyes": ["Eye Cream", "Eye Patch", "Eye Serum"]},
    "Makeup": {"Lips": ["Lipstick", "Lip Gloss", "Lip Liner"], "Eyes": ["Mascara", "Eyeliner", "Eyeshadow"],
               "Face": ["Foundation", "Concealer", "Blush"], "Nails": ["Nail Polish", "Top Coat", "Nail File"]},
    "Hair Care": {"Wash": ["Shampoo", "Conditioner", "Dry Shampoo"], "Styling": ["Hair Spray", "Hair Gel", "Mousse"],
                  "Treatment": ["Hair Mask", "Hair Oil", "Leave-In"], "Tools": ["Hair Dryer", "Flat Iron", "Brush"]},
    "Fragrance": {"Women": ["Eau de Parfum", "Body Mist", "Perfume Oil"], "Men": ["Cologne", "Aftershave", "Deodorant"],
                  "Home": ["Candle", "Diffuser", "Room Spray"], "Sets": ["Gift Set", "Travel Set", "Sampler"]},
    "Bath": {"Soap": ["Bar Soap", "Liquid Soap", "Hand Wash"], "Soak": ["Bath Salt", "Bath Bomb", "Bubble Bath"],
             "Shower": ["Shower Gel", "Body Wash", "Loofah"], "Spa": ["Face Mask", "Foot Cream", "Massage Oil"]},
}
ADJECTIVES = ["Gentle", "Daily", "Intense", "Pure", "Radiant", "Matte", "Hydrating", "Classic", "Fresh", "Velvet",
              "Ultra", "Natural", "Bold", "Silk", "Clear", "Deep"]
BRAND_STEMS = ["Lumi", "Vela", "Orra", "Nova", "Kiri", "Sola", "Mira", "Zeta", "Aura", "Bela", "Cora", "Dune",
               "Fira", "Gala", "Hana", "Iris", "Juno", "Kala", "Lyra", "Mona"]
BRAND_SUFFIXES = ["Labs", "Beauty", "& Co", "Naturals"]


def _catalog(rng: random.Random, num_items: int):
    leaves = [(top, sub, leaf) for top, subs in TOPS.items() for sub, nouns in subs.items() for leaf in nouns]
    brands = {top: [f"{rng.choice(BRAND_STEMS)} {rng.choice(BRAND_SUFFIXES)}" for _ in range(4)] for top in TOPS}
    items = []
    for index in range(num_items):
        top, sub, leaf = leaves[index % len(leaves)] if index < len(leaves) else rng.choice(leaves)
        brand = rng.choice(brands[top])
        title = f"{brand} {rng.choice(ADJECTIVES)} {leaf} {rng.choice(['30 ml', '50 ml', '100 ml', 'Mini', 'Duo', 'Refill'])}"
        items.append(((top, sub, leaf), ItemText(title=title, brand=brand, categories=[f"Beauty > {top} > {sub} > {leaf}"])))
    return items


def demo_dataset(seed: int = 0, num_users: int = 1_500, num_items: int = 600) -> Dataset:
    """The demo dataset (deterministic for a seed). Defaults: 1,500 users, 600 items, about
    12,000 interactions (mean length about 8)."""
    rng = random.Random(seed)
    catalog = _catalog(rng, num_items)
    popularity = [1.0 / (rank + 1) ** 0.8 for rank in range(num_items)]
    rng.shuffle(popularity)
    by_sub: dict[tuple, list[int]] = {}
    by_top: dict[str, list[int]] = {}
    for item, ((top, sub, _), _) in enumerate(catalog):
        by_sub.setdefault((top, sub), []).append(item)
        by_top.setdefault(top, []).append(item)
    successors = []
    for item, ((top, sub, _), _) in enumerate(catalog):
        pool = [other for other in by_sub[(top, sub)] if other != item] or by_top[top]
        successors.append(rng.sample(pool, k=min(len(pool), rng.randint(1, 3))))

    def popular(pool):
        return rng.choices(pool, weights=[popularity[i] for i in pool])[0]

    sequences = []
    for _ in range(num_users):
        tastes = rng.sample(sorted(TOPS), k=rng.choice([1, 1, 2]))
        taste_pool = [item for top in tastes for item in by_top[top]]
        length = min(5 + int(rng.expovariate(1 / 3.5)), 30)
        sequence = [popular(taste_pool)]
        for _ in range(20 * length):  # bounded: repeats are redrawn, never appended
            if len(sequence) == length:
                break
            previous = sequence[-1]
            top, sub, _ = catalog[previous][0]
            draw = rng.random()
            if draw < 0.55:
                candidate = rng.choice(successors[previous])
            elif draw < 0.80:
                candidate = popular(by_sub[(top, sub)])
            else:
                candidate = popular(taste_pool)
            if candidate not in sequence:
                sequence.append(candidate)
        sequences.append([item + 1 for item in sequence])
    return Dataset(f"demo-{seed}", sequences, [text for _, text in catalog], DataReport())
