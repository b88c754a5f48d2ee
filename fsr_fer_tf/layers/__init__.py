"""Keras layers of CovPoolFER (SPD feature) and of the FSR generator."""

from fsr_fer_tf.layers.batchnorm import FusedBatchNormalization
from fsr_fer_tf.layers.covpool import CovariancePooling
from fsr_fer_tf.layers.covpool import PerImageStandardization
from fsr_fer_tf.layers.spd import BiMap
from fsr_fer_tf.layers.spd import LogEig
from fsr_fer_tf.layers.spd import ReEig
from fsr_fer_tf.layers.spd import ReEigLogEig
from fsr_fer_tf.layers.spd import StiefelConstraint
from fsr_fer_tf.layers.spd import eig_function
from fsr_fer_tf.layers.spd import spd_log
from fsr_fer_tf.layers.spd import spd_log_rectified
from fsr_fer_tf.layers.spd import spd_rectify
from fsr_fer_tf.layers.rrdb import RRDB, ResidualDenseBlock
