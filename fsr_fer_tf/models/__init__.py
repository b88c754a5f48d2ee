"""Keras models: CovPoolFER, the RRDB generator, the critic, FSR-FER, and
the image-SR baselines Meta-SR and RCAN."""

from fsr_fer_tf.models.covpool import CovPoolFER
from fsr_fer_tf.models.covpool import build_covpoolfer
from fsr_fer_tf.models.covpool import covpoolfer_parts
from fsr_fer_tf.models.critic import VGGCritic
from fsr_fer_tf.models.fsr_fer import build_fsr_fer
from fsr_fer_tf.models.generator import RRDBGenerator
from fsr_fer_tf.models.isr import METASR_PRESETS
from fsr_fer_tf.models.isr import RCAN
from fsr_fer_tf.models.isr import RCAN_PRESETS
from fsr_fer_tf.models.isr import MetaSR
from fsr_fer_tf.models.isr import input_size
from fsr_fer_tf.models.isr import load_isr
from fsr_fer_tf.models.isr import pad_native
from fsr_fer_tf.models.isr import served_scales
from fsr_fer_tf.models.isr import super_resolve
