"""FSR-FER for inference: one model, face image -> expression logits.

logits = C(G(SPD(CNN(I_lr)))) (paper Fig. 2, eq. 1-3): the frozen CovPoolFER
parts with the trained generator between `spd` and `head`. Stage 2 exports it
as `fsr_fer.keras` so practitioners load a single file; it takes raw 0..255
pixels of a face already brought to the classifier's input size (the LR face
upsampled by bicubic, as in the paper).
"""

import keras

from fsr_fer_tf.models import covpool


def build_fsr_fer(fer_model, generator, name="fsr_fer"):
    """Chains CovPoolFER's parts and the generator into one functional model.

    Args:
        fer_model: a CovPoolFER model (`covpool.build_covpoolfer`).
        generator: the feature generator G, [B, d, d, 1] -> [B, d, d, 1].
        name: model name.

    Returns:
        A keras.Model, image [B, S, S, 3] -> logits [B, num_classes]; its
        layers "features", "spd", "generator" and "head" share weights with
        the arguments.

    Example:
    >>> model = build_fsr_fer(fer_model, generator)
    >>> logits = model(lr_faces_upsampled_to_100)
    """
    features, spd, head = covpool.covpoolfer_parts(fer_model)
    size = fer_model.input_shape[1]
    d = spd.output_shape[-1]
    image = keras.Input((size, size, 3), name="image")
    f_lr = spd(features(image))  # (B, d, d)
    f_sr = generator(keras.layers.Reshape((d, d, 1), name="to_map")(f_lr))
    f_sr = keras.layers.Reshape((d, d), name="from_map", dtype="float32")(f_sr)
    _, logits = head(f_sr)
    return keras.Model(image, logits, name=name)
