"""Run inside the test cluster's network namespace by tests/test_ray_cluster.py: ``python ray_driver.py
kill-encode ADDRESS CORPUS CHECKPOINT OUT``: a Ray encode whose first actor is killed (SIGKILL) once the first
chunk is back; Ray restarts it and retries its chunks, and the index must equal the local one."""
import os
import signal
import sys


def kill_encode(address, corpus, checkpoint, out):
    from pyserini_hypencoder.distributed import RayChunkEncoder
    from pyserini_hypencoder.encode._encode import encode_corpus
    from pyserini_hypencoder.encoders import HypencoderDocumentEncoder
    from pyserini_hypencoder.formats.corpus import JsonlCorpus
    encoder = HypencoderDocumentEncoder(checkpoint, max_length=32)
    pool = RayChunkEncoder(address, dict(model_name=checkpoint, max_length=32), batch_size=4, actors=2)
    victim = pool.pids()[0]

    def killing(chunks, progress):
        for i, vectors in enumerate(pool(chunks, progress)):
            if i == 0:
                os.kill(victim, signal.SIGKILL)
                print(f"killed encoder actor {victim}", file=sys.stderr, flush=True)
            yield vectors

    encode_corpus(JsonlCorpus(corpus), encoder, out, encoder_name=checkpoint, batch_size=4, chunk_size=8,
                  progress=False, encode_chunks=killing)
    assert victim not in pool.pids(), "the killed actor was not replaced"
    pool.close()
    print("ok")


if __name__ == "__main__":
    import torch
    torch.set_num_threads(1)
    {"kill-encode": kill_encode}[sys.argv[1]](*sys.argv[2:])
