"""The tutorial's Part 9 as steppable examples: a CNN, three recurrent nets and a self-attention block.

Every data set is generated here from the seed (nothing is downloaded), and every graph stays small
enough to step through by hand: tens of ops, a few hundred parameters. Node names and `module`
meta follow PyTorch's module paths (`conv1`, `rnn.weight_hh`), so the app folds each layer into a
box, and a recurrent layer's unrolled steps are named `rnn.t0`, `rnn.t1`, ... with `time` meta.
`examples.py` registers the builders listed in `DEEP_EXAMPLES`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .ir import Graph, Node
from .model import Model, TrainingDefaults

Array = np.ndarray

# -- cnn ---------------------------------------------------------------------------------------------
# The classic picture: a bright left half, a dark right half, and a filter that answers "bright on the
# left of dark?". Sliding it gives 30 on the two columns that straddle the edge and 0 on flat ground.
EDGE_IMAGE = np.array([[10.0] * 3 + [0.0] * 3] * 6)
VERTICAL_EDGE = np.array([[1.0, 0.0, -1.0]] * 3)

# 3×5 glyphs of the ten digits, row by row ("#" is ink), drawn onto an 8×8 canvas at a random place.
GLYPHS = {
    0: ("###", "#.#", "#.#", "#.#", "###"),
    1: (".#.", "##.", ".#.", ".#.", "###"),
    2: ("###", "..#", "###", "#..", "###"),
    3: ("###", "..#", "###", "..#", "###"),
    4: ("#.#", "#.#", "###", "..#", "..#"),
    5: ("###", "#..", "###", "..#", "###"),
    6: ("###", "#..", "###", "#.#", "###"),
    7: ("###", "..#", ".#.", ".#.", ".#."),
    8: ("###", "#.#", "###", "#.#", "###"),
    9: ("###", "#.#", "###", "..#", "###"),
}
DIGIT_SIZE = 8


def synthetic_digits(n: int, seed: int, noise: float = 0.1) -> tuple[Array, Array]:
    """`n` digits (0..9 in turn) as (n, 1, 8, 8) images with pixel noise, and their labels.

    The noise also keeps every pooling window free of ties, so max-pool's gradient is well defined.
    """
    rng = np.random.default_rng(seed)
    images = rng.normal(0.0, noise, (n, 1, DIGIT_SIZE, DIGIT_SIZE))
    labels = np.arange(n) % 10
    for k, digit in enumerate(labels):
        glyph = np.array([[ch == "#" for ch in row] for row in GLYPHS[int(digit)]], dtype=float)
        top = rng.integers(0, DIGIT_SIZE - glyph.shape[0] + 1)
        left = rng.integers(0, DIGIT_SIZE - glyph.shape[1] + 1)
        images[k, 0, top: top + glyph.shape[0], left: left + glyph.shape[1]] += glyph
    return images, labels


def _uniform(rng: np.random.Generator, fan_in: int, *shape: int) -> Array:
    """PyTorch's default initialisation for linear, conv and recurrent weights: U(−1/√fan_in, 1/√fan_in)."""
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, shape)


def cnn(seed: int) -> Model:
    """Part 9.1: the vertical-edge filter on a 6×6 image, then a conv → max-pool → ReLU → dense digit classifier."""
    rng = np.random.default_rng(seed)
    g = Graph("cnn")
    # Part A: one fixed filter over one image, forward only (it does not feed the loss).
    image = g.add("constant", name="edge.image", shape=(1, 1, 6, 6), module="edge")
    edge_filter = g.add("constant", name="edge.filter", shape=(1, 1, 3, 3), module="edge")
    g.add("conv2d", image, edge_filter, name="edge.map", module="edge")
    # Part B: the classifier. Its first filter starts as the same edge detector, the other three at random.
    x = g.input("x", (20, 1, DIGIT_SIZE, DIGIT_SIZE), label="8×8 digit images")
    w1, b1 = g.parameter("conv1.weight", (4, 1, 3, 3), module="conv1"), g.parameter("conv1.bias", (4,), module="conv1")
    conv = g.add("conv2d", x, w1, b1, name="conv1", attrs={"padding": 1}, module="conv1")
    pooled = g.add("max_pool2d", conv, name="pool1", attrs={"kernel_size": 2}, module="pool1")
    act = g.add("relu", pooled, name="relu1", module="relu1")
    flat = g.add("flatten", act, name="flatten", module="flatten")
    w2, b2 = g.parameter("fc.weight", (10, 64), module="fc"), g.parameter("fc.bias", (10,), module="fc")
    g.set_outputs(g.add("linear", flat, w2, b2, name="logits", attrs={"transpose_weight": True}, module="fc"))

    conv_w = _uniform(rng, 9, 4, 1, 3, 3)
    conv_w[0, 0] = VERTICAL_EDGE / 3.0
    images, labels = synthetic_digits(20, seed)
    return Model(
        g,
        {
            "edge.image": EDGE_IMAGE.reshape(1, 1, 6, 6).copy(),
            "edge.filter": VERTICAL_EDGE.reshape(1, 1, 3, 3).copy(),
            "conv1.weight": conv_w,
            "conv1.bias": _uniform(rng, 9, 4),
            "fc.weight": _uniform(rng, 64, 10, 64),
            "fc.bias": _uniform(rng, 64, 10),
        },
        batch={"x": images, "y": labels},
        loss="cross_entropy",
        metrics=("accuracy",),
        training=TrainingDefaults("adam", 0.01, 200),
        description=(
            "A 3×3 vertical-edge filter slides over a 6×6 image: 30 where bright meets dark, 0 on flat ground "
            "(edge.map). Then a tiny CNN (conv 3×3 → max-pool 2 → ReLU → dense) classifies 8×8 synthetic digits; "
            "its first filter starts as the same edge detector."
        ),
    )


# -- recurrent ----------------------------------------------------------------------------------------
SEQ_LEN, HIDDEN, SEQUENCES = 10, 8, 16


def first_bit_task(seed: int, n: int = SEQUENCES, length: int = SEQ_LEN) -> tuple[Array, Array]:
    """Sequences of random bits (n, length, 1); the label is the FIRST bit, seen `length` steps before the end."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, (n, length, 1)).astype(float)
    bits[: n // 2, 0, 0], bits[n // 2:, 0, 0] = 0.0, 1.0  # both answers equally often
    return bits, bits[:, 0, 0].astype(np.int64)


def _recurrent(kind: str, seed: int) -> Model:
    """One recurrent layer unrolled over SEQ_LEN steps, then a dense layer on the last hidden state."""
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    rng = np.random.default_rng(seed)
    g = Graph(kind)
    x = g.input("x", (SEQUENCES, SEQ_LEN, 1), label="bit sequences (batch, time, 1)")
    shape0 = (2, HIDDEN) if kind == "lstm" else (HIDDEN,)  # broadcasts over any batch size
    state: Node = g.add("constant", name=f"{kind}.state0", shape=shape0, module=kind)
    weights = [
        g.parameter(f"{kind}.{name}", shape, module=kind)
        for name, shape in (
            ("weight_ih", (gates * HIDDEN, 1)),
            ("weight_hh", (gates * HIDDEN, HIDDEN)),
            ("bias_ih", (gates * HIDDEN,)),
            ("bias_hh", (gates * HIDDEN,)),
        )
    ]
    for t in range(SEQ_LEN):
        x_t = g.add("select", x, name=f"{kind}.x{t}", attrs={"axis": 1, "index": t}, module=kind, time=t)
        state = g.add(f"{kind}_cell", x_t, state, *weights, name=f"{kind}.t{t}", module=kind, time=t)
    if kind == "lstm":
        state = g.add("select", state, name="lstm.h", attrs={"axis": 0, "index": 0}, module=kind)
    w, b = g.parameter("fc.weight", (2, HIDDEN), module="fc"), g.parameter("fc.bias", (2,), module="fc")
    g.set_outputs(g.add("linear", state, w, b, name="logits", attrs={"transpose_weight": True}, module="fc"))

    arrays = {f"{kind}.state0": np.zeros(shape0)}
    for node, fan_in in zip(weights, (HIDDEN,) * 4, strict=True):
        arrays[node.name] = _uniform(rng, fan_in, *node.shape)
    if kind in ("lstm", "gru"):
        # Start by remembering: +1 in each bias of the LSTM's forget gate f (Jozefowicz et al., 2015) and of the
        # GRU's update gate z, so f, z = σ(2) ≈ 0.88 keep most of the old state at every step.
        for name in (f"{kind}.bias_ih", f"{kind}.bias_hh"):
            arrays[name][HIDDEN: 2 * HIDDEN] = 1.0
    arrays["fc.weight"], arrays["fc.bias"] = _uniform(rng, HIDDEN, 2, HIDDEN), _uniform(rng, HIDDEN, 2)
    bits, labels = first_bit_task(seed)
    lesson = {
        "rnn": "Each step back multiplies the gradient by W_hh and tanh′, so it shrinks geometrically: by the first "
               "step it has nearly vanished.",
        "lstm": "The cell state c is a highway: going back one step multiplies its gradient only by the forget "
                "gate, so the first bit's gradient survives.",
        "gru": "The update gate z passes the old state straight through (h′ = (1 − z)·n + z·h), so the gradient "
               "of the first steps survives.",
    }[kind]
    return Model(
        g,
        arrays,
        batch={"x": bits, "y": labels},
        loss="cross_entropy",
        metrics=("accuracy",),
        training=TrainingDefaults("adam", 0.02, 300),
        description=f"Remember the first bit of {SEQ_LEN}: a {kind.upper()} unrolled over {SEQ_LEN} steps "
                    f"({kind}.t0 … {kind}.t{SEQ_LEN - 1}). {lesson} Compare the gradient norms per step.",
    )


def rnn(seed: int) -> Model:
    return _recurrent("rnn", seed)


def lstm(seed: int) -> Model:
    return _recurrent("lstm", seed)


def gru(seed: int) -> Model:
    return _recurrent("gru", seed)


# -- attention -----------------------------------------------------------------------------------------
SENTENCE = ("the", "cat", "sat", "on", "the", "mat")
VOCAB = ("the", "cat", "sat", "on", "mat")
EMBED, HEADS = 8, 2
_CAUSAL_FILL = -1e9  # not −∞: a −∞ would be reported as a non-finite value; e^(−1e9) is exactly 0 all the same


def attention(seed: int) -> Model:
    """Part 9.3: one causal self-attention block predicting the next word, from primitive ops.

    Every product of attention is its own step: q kᵀ, the scaling, the causal mask, softmax (the
    attention matrix, tokens on both axes), and the weighted sum of values.
    """
    rng = np.random.default_rng(seed)
    tokens = SENTENCE[:-1]
    length, head_dim = len(tokens), EMBED // HEADS
    g = Graph("attention")
    # One sentence, one row per word: the words are the rows the trainer batches and the loss averages over.
    ids = g.input("tokens", (length,), label="token ids", tokens=tokens)

    def param(name: str, shape: tuple[int, ...]) -> Node:
        return g.parameter(name, shape, module=name.rsplit(".", 1)[0])

    emb = g.add("embedding", ids, param("embed.weight", (len(VOCAB), EMBED)), name="embed", module="embed")
    x = g.add("add", emb, param("pos.weight", (length, EMBED)), name="embed+pos", module="embed")

    def project(which: str) -> Node:
        # q = x W_q in the tutorial's (in, out) layout, without bias as in most modern transformers: a key
        # bias would even get a zero gradient, since softmax ignores a shift shared by a whole row of scores.
        return g.add("matmul", x, param(f"attn.W_{which}", (EMBED, EMBED)), name=f"attn.{which}", module="attn")

    q, k, v = project("q"), project("k"), project("v")
    split = {"shape": (length, HEADS, head_dim)}
    heads = {"axes": (1, 0, 2)}  # (length, heads, head_dim) <-> (heads, length, head_dim)
    q_h = g.add("transpose", g.add("reshape", q, name="attn.q_split", attrs=split, module="attn"),
                name="attn.q_heads", attrs=heads, module="attn")
    k_t = g.add("transpose", g.add("reshape", k, name="attn.k_split", attrs=split, module="attn"),
                name="attn.k_heads_T", attrs={"axes": (1, 2, 0)}, module="attn")
    v_h = g.add("transpose", g.add("reshape", v, name="attn.v_split", attrs=split, module="attn"),
                name="attn.v_heads", attrs=heads, module="attn")
    scores = g.add("matmul", q_h, k_t, name="attn.scores", module="attn")
    scale = g.add("constant", name="attn.scale", shape=(), module="attn")
    scaled = g.add("mul", scores, scale, name="attn.scaled", module="attn")
    mask = g.add("constant", name="attn.causal_mask", shape=(length, length), module="attn")
    masked = g.add("add", scaled, mask, name="attn.masked", module="attn")
    weights = g.add("softmax", masked, name="attn.weights", attrs={"axis": -1}, module="attn", tokens=tokens)
    ctx = g.add("matmul", weights, v_h, name="attn.context", module="attn")
    merged = g.add("reshape", g.add("transpose", ctx, name="attn.merge", attrs=heads, module="attn"),
                   name="attn.concat_heads", attrs={"shape": (length, EMBED)}, module="attn")
    out = g.add("linear", merged, param("attn.out_proj.weight", (EMBED, EMBED)), param("attn.out_proj.bias", (EMBED,)),
                name="attn.out", attrs={"transpose_weight": True}, module="attn.out_proj")
    res = g.add("add", x, out, name="residual", module="block")
    normed = g.add("layer_norm", res, param("norm.weight", (EMBED,)), param("norm.bias", (EMBED,)), name="norm",
                   module="norm")
    logits = g.add("linear", normed, param("head.weight", (len(VOCAB), EMBED)), param("head.bias", (len(VOCAB),)),
                   name="logits", attrs={"transpose_weight": True}, module="head")
    g.set_outputs(logits)

    arrays = {
        "embed.weight": rng.standard_normal((len(VOCAB), EMBED)),
        "pos.weight": rng.standard_normal((length, EMBED)) * 0.5,
        "attn.scale": np.array(1.0 / np.sqrt(head_dim)),
        "attn.causal_mask": np.triu(np.full((length, length), _CAUSAL_FILL), k=1),
        "norm.weight": np.ones(EMBED),
        "norm.bias": np.zeros(EMBED),
    }
    for name in ("attn.W_q", "attn.W_k", "attn.W_v", "attn.out_proj.weight"):
        arrays[name] = _uniform(rng, EMBED, EMBED, EMBED)
    arrays["attn.out_proj.bias"] = np.zeros(EMBED)
    arrays["head.weight"], arrays["head.bias"] = _uniform(rng, EMBED, len(VOCAB), EMBED), np.zeros(len(VOCAB))
    ids_value = np.array([VOCAB.index(w) for w in tokens], dtype=float)  # float ids: see nn.as_ids
    targets = np.array([VOCAB.index(w) for w in SENTENCE[1:]])
    return Model(
        g,
        {k: np.asarray(v, dtype=float) for k, v in arrays.items()},
        batch={"tokens": ids_value, "y": targets},
        loss="cross_entropy",
        metrics=("accuracy",),
        training=TrainingDefaults("adam", 0.02, 200),
        description=(
            f"One causal self-attention block ({HEADS} heads) reads “{' '.join(tokens)}” and predicts each next "
            "word. attn.weights is the attention matrix: row i says how much word i looks at each earlier word; "
            "the two “the”s are followed by different words."
        ),
    )


DEEP_EXAMPLES: tuple[tuple[str, str, str, Callable[[int], Model]], ...] = (
    ("cnn", "Part 9.1: a 3×3 vertical-edge filter, then a tiny CNN on 8×8 synthetic digits", "Part 9.1", cnn),
    ("rnn", "Part 9.2: a plain RNN must remember the first bit of 10, and its gradient vanishes", "Part 9.2", rnn),
    ("lstm", "Part 9.2: an LSTM remembers the first bit of 10; the cell state carries the gradient", "Part 9.2",
     lstm),
    ("gru", "Part 9.2: a GRU remembers the first bit of 10 through its update gate", "Part 9.2", gru),
    ("attention", "Part 9.3: one causal self-attention block predicting the next word of a sentence", "Part 9.3",
     attention),
)
