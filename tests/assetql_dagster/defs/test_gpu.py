"""The remote pools a deployment declares in $ASSETQL_REMOTE_POOLS: parsed in order, or refused saying why."""

import pytest

from assetql_dagster.defs.gpu import REMOTE_POOLS_ENV, endpoint_pool, endpoint_slug, remote_pools_from_env

SD35 = "bedrock:stability.sd3-5-large-v1:0"


def test_entries_are_models_with_slots_in_the_order_given():
    declared = remote_pools_from_env({REMOTE_POOLS_ENV: f" sagemaker:sdxl-prod=4, {SD35}=2,,sagemaker:b = 1000 "})
    assert list(declared.items()) == [("sagemaker:sdxl-prod", 4), (SD35, 2), ("sagemaker:b", 1000)]
    assert (endpoint_pool(SD35), endpoint_slug(SD35)) == (f"remote:{SD35}", "bedrock_stability_sd3_5_large_v1_0")
    assert remote_pools_from_env({}) == {} and remote_pools_from_env({REMOTE_POOLS_ENV: " "}) == {}


@pytest.mark.parametrize("value, message", [
    ("sagemaker:sdxl-prod", "entry 'sagemaker:sdxl-prod' must be MODEL=SLOTS, e.g. 'sagemaker:sdxl-prod=4'"),
    ("=4", "entry '=4' must be MODEL=SLOTS"),
    ("sagemaker:a=1,sagemaker:b", "entry 'sagemaker:b' must be MODEL=SLOTS"),
    ("sagemaker:sdxl-prod=0", "entry 'sagemaker:sdxl-prod=0': SLOTS must be a whole number from 1 to 1000 "
                              r"\(the calls the endpoint serves at once\) but is '0'"),
    ("sagemaker:sdxl-prod=1001", "SLOTS must be a whole number from 1 to 1000 .* but is '1001'"),
    ("sagemaker:sdxl-prod=four", "but is 'four'"),
    ("sagemaker:sdxl-prod=-2", "but is '-2'"),
    (f"{SD35}:2", f"entry '{SD35}:2' must be MODEL=SLOTS"),
    ("bedrock:amazon.titan-image-generator-v1=2", "entry 'bedrock:amazon.titan-image-generator-v1=2': model "
                                                  "'bedrock:amazon.titan-image-generator-v1' names no Bedrock Stability"),
    ("sagemaker:sdxl_prod=4", "entry 'sagemaker:sdxl_prod=4': model 'sagemaker:sdxl_prod' names no SageMaker endpoint"),
    ("tiny=2", "entry 'tiny=2': model 'tiny' is not a remote model: expected 'sagemaker:ENDPOINT' or 'bedrock:MODEL_ID'"),
    ("sagemaker:a=1,sagemaker:a=2", "entry 'sagemaker:a=2': 'sagemaker:a' is declared twice"),
    ("bedrock:stability.x-v1:0=1,bedrock:stability.x-v1-0=1", "'bedrock:stability.x-v1-0' and "
     "'bedrock:stability.x-v1:0' would share the op generate_remote_shard_bedrock_stability_x_v1_0"),
])
def test_a_malformed_entry_is_refused_naming_the_setting_the_entry_and_what_was_expected(value, message):
    with pytest.raises(ValueError, match=f"^{REMOTE_POOLS_ENV} .*{message}"):
        remote_pools_from_env({REMOTE_POOLS_ENV: value})
