"""Orders reported by merchants: the status machine (``status``, pure), attribution to
clicks (``attribution``) and storage (``store``)."""
