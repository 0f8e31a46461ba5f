//! Register-level Intel VT-d and Arm SMMUv3 drivers (in progress).
#![no_std]
