"""Running one variant matrix as several pytest processes: shards (``shards``), and a launcher that fans them out
through submitit (``launch``, optional extra ``[sweep]``)."""
