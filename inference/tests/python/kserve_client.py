"""Interop: NVIDIA's tritonclient scores with Livora through KServe's Open Inference Protocol V2.

A client nobody here wrote: `tritonclient.grpc.InferenceServerClient` asks whether the server is
live and the model ready, reads the model's inputs from its metadata, builds one `InferInput` per
feature from numpy arrays (FP64 with NaN for a missing number, BYTES with b"" for a missing
category) and infers, with the API key in the request headers.

Usage: kserve_client.py --url HOST:PORT --key KEY --client CLIENT --model churn --features-json FILE
       [--version VERSION]
FILE holds {"feature name": [value or null, ...], ...}, one list per feature, all of one length.
Prints {"probabilities": [...], "model_version": "...", "inputs": [{"name", "datatype", "shape"}],
"platform": "...", "versions": [...]} as JSON on stdout; exits non-zero on any failure.
"""

import argparse
import json
import sys

INSTALL = "python3 -m pip install 'tritonclient[grpc]'"

try:
    import numpy as np
    import tritonclient.grpc as grpcclient
except ImportError as e:  # fail loudly, and say how to fix it
    sys.exit(f"kserve_client.py needs tritonclient's gRPC client ({e}); install it with: {INSTALL}")


def column(values, datatype):
    """The numpy array tritonclient sends for one feature."""
    if datatype == "BYTES":
        # An object array of bytes: tritonclient length-prefixes each element. None would be sent as
        # the text "None", so a missing category is the empty string, as Livora reads it.
        return np.array([b"" if v is None else str(v).encode("utf-8") for v in values], dtype=np.object_)
    if datatype == "FP64":
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    raise SystemExit(f"unexpected input datatype {datatype}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--client", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--version", default="")
    parser.add_argument("--features-json", required=True)
    args = parser.parse_args()
    with open(args.features_json, encoding="utf-8") as f:
        features = json.load(f)
    headers = {"authorization": f"Bearer {args.key}", "x-client-id": args.client}

    client = grpcclient.InferenceServerClient(url=args.url)
    # Probes need no credentials.
    assert client.is_server_live(), "the server is not live"
    assert client.is_server_ready(), "the server is not ready"
    assert client.is_model_ready(args.model, args.version, headers=headers), f"{args.model} is not ready"
    metadata = client.get_model_metadata(args.model, args.version, headers=headers, as_json=True)

    inputs = []
    for tensor in metadata["inputs"]:
        data = column(features[tensor["name"]], tensor["datatype"])
        infer_input = grpcclient.InferInput(tensor["name"], list(data.shape), tensor["datatype"])
        infer_input.set_data_from_numpy(data)
        inputs.append(infer_input)
    outputs = [grpcclient.InferRequestedOutput("probability")]
    result = client.infer(
        args.model, inputs, model_version=args.version, outputs=outputs, request_id="interop-1", headers=headers
    )
    probabilities = result.as_numpy("probability")
    assert probabilities is not None, "no `probability` output"
    assert probabilities.dtype == np.float64, probabilities.dtype
    response = result.get_response(as_json=True)
    assert response["id"] == "interop-1", response
    client.close()

    print(
        json.dumps(
            {
                "probabilities": probabilities.tolist(),
                "model_version": response["model_version"],
                "inputs": metadata["inputs"],
                "platform": metadata["platform"],
                "versions": metadata["versions"],
            }
        )
    )


if __name__ == "__main__":
    main()
