"""Keras models: CovPoolFER, the RRDB generator, the critic, FSR-FER."""

from fsr_fer_tf.models.covpool import CovPoolFER
from fsr_fer_tf.models.covpool import build_covpoolfer
from fsr_fer_tf.models.covpool import covpoolfer_parts
from fsr_fer_tf.models.critic import VGGCritic
from fsr_fer_tf.models.fsr_fer import build_fsr_fer
from fsr_fer_tf.models.generator import RRDBGenerator
