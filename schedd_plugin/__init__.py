"""The schedd plug-in: follows job_queue.log and feeds a forked pandad."""
