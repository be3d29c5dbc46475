"""The tutorial's 2-2-1 example worked by hand, shared by the tests."""

import math

# The tutorial's network: 2 inputs, 2 sigmoid hidden neurons, 1 sigmoid output, loss (y^ - y)^2.
X1, X2, Y = 0.5, 0.1, 0.6
W11, W12 = 0.4, 0.3  # into hidden neuron 1
W21, W22 = 0.6, 0.9  # into hidden neuron 2
W31, W32 = 0.5, 0.7  # into the output neuron
B1, B2, B3 = 0.1, 0.2, 0.3
LR = 0.1
# The same weights and biases as Network.from_params takes them (weights[l] is n_out x n_in).
WEIGHTS = [[[W11, W12], [W21, W22]], [[W31, W32]]]
BIASES = [[B1, B2], [B3]]


def by_hand():
    """The tutorial's forward pass, backward pass and update, one equation per line."""
    v = {}
    # forward pass
    v["z1"] = W11 * X1 + W12 * X2 + B1
    v["h1"] = 1 / (1 + math.exp(-v["z1"]))
    v["z2"] = W21 * X1 + W22 * X2 + B2
    v["h2"] = 1 / (1 + math.exp(-v["z2"]))
    v["z3"] = W31 * v["h1"] + W32 * v["h2"] + B3
    v["y_hat"] = 1 / (1 + math.exp(-v["z3"]))
    v["loss"] = (v["y_hat"] - Y) ** 2
    # output layer
    v["dL_dy_hat"] = 2 * (v["y_hat"] - Y)
    v["dy_hat_dz3"] = v["y_hat"] * (1 - v["y_hat"])
    v["delta3"] = v["dL_dy_hat"] * v["dy_hat_dz3"]
    v["dL_dw31"] = v["delta3"] * v["h1"]
    v["dL_dw32"] = v["delta3"] * v["h2"]
    v["dL_db3"] = v["delta3"]
    # hidden layer
    v["delta1"] = v["delta3"] * W31 * v["h1"] * (1 - v["h1"])
    v["delta2"] = v["delta3"] * W32 * v["h2"] * (1 - v["h2"])
    v["dL_dw11"] = v["delta1"] * X1
    v["dL_dw12"] = v["delta1"] * X2
    v["dL_dw21"] = v["delta2"] * X1
    v["dL_dw22"] = v["delta2"] * X2
    v["dL_db1"] = v["delta1"]
    v["dL_db2"] = v["delta2"]
    # gradient-descent update
    v["w11"] = W11 - LR * v["dL_dw11"]
    v["w12"] = W12 - LR * v["dL_dw12"]
    v["w21"] = W21 - LR * v["dL_dw21"]
    v["w22"] = W22 - LR * v["dL_dw22"]
    v["w31"] = W31 - LR * v["dL_dw31"]
    v["w32"] = W32 - LR * v["dL_dw32"]
    v["b1"] = B1 - LR * v["dL_db1"]
    v["b2"] = B2 - LR * v["dL_db2"]
    v["b3"] = B3 - LR * v["dL_db3"]
    return v


# The same quantities as fixed decimals, printed once to 12 significant digits.
TUTORIAL_DECIMALS = {
    "z1": 0.33,
    "h1": 0.581759376842,
    "z2": 0.59,
    "h2": 0.643365145694,
    "z3": 1.04123529041,
    "y_hat": 0.739088285867,
    "loss": 0.0193455512654,
    "delta3": 0.0536426775807,
    "dL_dw31": 0.0312071306815,
    "dL_dw32": 0.0345118290771,
    "delta1": 0.0065260448916,
    "delta2": 0.00861568479432,
    "dL_dw11": 0.0032630224458,
    "dL_dw12": 0.00065260448916,
    "dL_dw21": 0.00430784239716,
    "dL_dw22": 0.000861568479432,
    "w11": 0.399673697755,
    "w22": 0.899913843152,
    "w31": 0.496879286932,
    "w32": 0.696548817092,
    "b1": 0.0993473955108,
    "b3": 0.294635732242,
}
