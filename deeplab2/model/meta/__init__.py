"""Meta-architectures: the contract a model family fulfils, its registry, and
`ModelConfig`, the settings a built model owns."""
from deeplab2.model.meta.architecture import (MEAN, OFFSET, SOFTMAX, TOTAL_LOSS,
                                              DenseOutput, MetaArchitecture)
from deeplab2.model.meta.config import (CONFIG_FILE, FORMAT_VERSION, ConfigFileError,
                                        ModelConfig, config_from_dict, config_from_json,
                                        make_config)
from deeplab2.model.meta.registry import (get_meta_architecture, meta_architecture_names,
                                          register_meta_architecture)
