"""Operator commands over the log and the object store: `python -m ops --help`.

    replay   rebuild every API projection from offset 0 and print (or compare) the API's answers
    rerun    re-run the pipeline of one sealed version into a separate deployment namespace (audits)
    export   write a sealed version's tables from its S3 snapshot to local CSV or Parquet files
"""
