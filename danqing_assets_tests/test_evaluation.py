"""Dataset analysis, retrieval / zero-shot metrics and the Chinese-CLIP benchmark format (no Dagster)."""

import base64
import io
import json
import math

import numpy as np
import pytest
from PIL import Image

from danqing_assets.curation.evaluation.analysis import (
    balance_stats,
    binned,
    kmeans_cluster_sizes,
    pos_shares,
)
from danqing_assets.curation.evaluation.benchmark_sets import (
    BenchmarkFormatError,
    discover_sets,
    read_retrieval_set,
    read_zeroshot_set,
    write_retrieval_set,
    write_zeroshot_set,
)
from danqing_assets.curation.evaluation.metrics import (
    class_embeddings,
    recall_at_k,
    retrieval_metrics,
    top_k,
    zero_shot_accuracy,
)
from danqing_assets.curation.evaluation.smoke_set import COLOUR_CLASSES, build_smoke_sets, dominant_colour
from danqing_assets_tests.realworld import REALWORLD

# --- retrieval: a hand-built case whose ranks are known --------------------------------
# Images are the unit vectors e0..e3; each text's similarity to image j is its j-th coordinate.
IMAGES = np.eye(4)
TEXTS = np.array([
    [1.0, 0.0, 0.0, 0.5],  # text 0 → image 0: rank 1
    [0.0, 0.9, 0.1, 0.0],  # text 1 → image 2: rank 2 (image 1 is closer)
    [0.5, 0.4, 0.0, 0.3],  # text 2 → image 3: rank 3
    [0.0, 0.0, 1.0, 0.0],  # text 3 → image 0 or 2: image 2 at rank 1
])
TEXT_IMAGES = [[0], [2], [3], [0, 2]]


def test_text_to_image_recall_on_a_hand_built_case():
    assert recall_at_k(TEXTS, IMAGES, TEXT_IMAGES, ks=(1, 2, 3)) == {"R@1": 50.0, "R@2": 75.0, "R@3": 100.0}


def test_image_to_text_recall_queries_only_images_some_text_names():
    # image 0 ← texts {0, 3}: text 0 first (1.0); image 2 ← {1, 3}: text 3 first (1.0);
    # image 3 ← {2}: text 0 scores 0.5 > text 2's 0.3, so rank 2; image 1 is named by no text and is no query
    metrics = retrieval_metrics(TEXTS, IMAGES, TEXT_IMAGES, ks=(1, 2, 3))
    assert metrics["image_to_text"] == pytest.approx({"R@1": 200 / 3, "R@2": 100.0, "R@3": 100.0})
    assert metrics["text_to_image"] == {"R@1": 50.0, "R@2": 75.0, "R@3": 100.0}
    assert metrics["mean_recall"] == pytest.approx((50 + 75 + 100 + 200 / 3 + 100 + 100) / 6)


def test_recall_matches_chinese_clips_own_evaluation_scripts(tmp_path):
    """Our recall@1/5/10 against cn_clip's eval/evaluation.py and evaluation_tr.py on the same predictions."""
    from cn_clip.eval import evaluation, evaluation_tr

    rng = np.random.default_rng(7)
    images, texts = rng.normal(size=(14, 8)), rng.normal(size=(20, 8))
    text_images = [sorted(set(rng.integers(0, 14, size=int(rng.integers(1, 3))).tolist())) for _ in range(20)]
    ours = retrieval_metrics(texts, images, text_images)
    ids = lambda xs: [1000 + int(x) for x in xs]  # noqa: E731 - image ids as in a real set
    golden, predicted = tmp_path / "texts.jsonl", tmp_path / "predictions.jsonl"
    golden.write_text("".join(json.dumps({"text_id": t, "image_ids": ids(g)}) + "\n" for t, g in enumerate(text_images)))
    predicted.write_text("".join(json.dumps({"text_id": t, "image_ids": ids(row)}) + "\n"
                                 for t, row in enumerate(top_k(texts, images, 10))))
    _, r1, r5, r10 = evaluation.compute_score(str(golden), str(predicted))
    assert [r1, r5, r10] == pytest.approx(list(ours["text_to_image"].values()))
    # image→text: cn_clip's transform of the annotation, then its evaluation_tr
    image_texts: dict[int, list[int]] = {}
    for t, g in enumerate(text_images):
        for i in g:
            image_texts.setdefault(i, []).append(t)
    tr_golden, tr_predicted = tmp_path / "texts.tr.jsonl", tmp_path / "tr_predictions.jsonl"
    tr_golden.write_text("".join(json.dumps({"image_id": 1000 + i, "text_ids": ts}) + "\n" for i, ts in image_texts.items()))
    queried = sorted(image_texts)
    tr_predicted.write_text("".join(json.dumps({"image_id": 1000 + i, "text_ids": row.tolist()}) + "\n"
                                    for i, row in zip(queried, top_k(images[queried], texts, 10))))
    _, r1, r5, r10 = evaluation_tr.compute_score(str(tr_golden), str(tr_predicted))
    assert [r1, r5, r10] == pytest.approx(list(ours["image_to_text"].values()))


def test_top_k_breaks_ties_by_candidate_order_and_handles_k_beyond_the_pool():
    assert top_k(np.array([[1.0, 1.0]]), np.array([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0]]), 3).tolist() == [[2, 0, 1]]
    assert top_k(np.array([[1.0]]), np.array([[0.5], [0.7]]), 10).tolist() == [[1, 0]]


def test_recall_refuses_queries_without_ground_truth():
    with pytest.raises(ValueError, match="at least one correct"):
        recall_at_k(TEXTS, IMAGES, [[0], [], [3], [2]])
    with pytest.raises(ValueError, match="4 queries but 3"):
        recall_at_k(TEXTS, IMAGES, [[0], [1], [2]])


# --- zero-shot ----------------------------------------------------------------------------
def test_zero_shot_accuracy_on_a_hand_built_case():
    classifier = np.eye(3)  # class c is the unit vector e_c
    images = np.array([[0.9, 0.1, 0.0],   # class 0: right at top 1
                       [0.6, 0.4, 0.0],   # class 1: second
                       [0.5, 0.1, 0.3],   # class 2: second
                       [0.3, 0.1, 0.7]])  # class 1: third
    result = zero_shot_accuracy(images, classifier, [0, 1, 2, 1], ks=(1, 2, 5))
    assert result == {"top1": 25.0, "top2": 75.0}  # top-5 of 3 classes would always be 100 %: left out
    with pytest.raises(ValueError, match="labels must lie"):
        zero_shot_accuracy(images, classifier, [0, 1, 3, 1])


def test_class_embedding_is_the_normalised_mean_of_its_prompts():
    prompts = np.array([[1.0, 0.0], [0.0, 1.0],    # class 0: two templates
                        [1.0, 0.0], [1.0, 0.0]])   # class 1
    got = class_embeddings(prompts, 2)
    assert np.allclose(got, [[math.sqrt(0.5), math.sqrt(0.5)], [1.0, 0.0]])
    with pytest.raises(ValueError, match="do not split"):
        class_embeddings(prompts[:3], 2)


# --- analysis -------------------------------------------------------------------------------
def test_binned_puts_outliers_in_the_edge_bins():
    h = binned(np.array([-3, 0, 49, 50, 120, 5000]), 0, 100, 50, "{:.0f}")
    assert h.labels == ["0", "50", "100"] and h.counts == [3, 1, 2]


def test_part_of_speech_shares_follow_jiebas_tags():
    # 一个/m 年轻/a 的/uj 摄影师/n 在/p 湖边/s 拍照/v ，/x: seven words, the comma (x) is not one
    shares = pos_shares(["一个年轻的摄影师在湖边拍照，"])
    assert shares["words"] == 7
    assert shares["noun"] == pytest.approx(1 / 7) and shares["verb"] == pytest.approx(1 / 7)
    assert shares["adjective"] == pytest.approx(1 / 7)


def test_kmeans_finds_the_sizes_of_well_separated_groups():
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:3]
    points = np.concatenate([c + 0.01 * rng.normal(size=(n, 8)) for c, n in zip(centres, (50, 30, 20))])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    assert kmeans_cluster_sizes(points, 3).tolist() == [50, 30, 20]
    # a small snapshot gets fewer clusters: 100 points allow at most 10
    assert kmeans_cluster_sizes(points, 10_000).size == 10


def test_balance_statistics():
    even = balance_stats(np.array([5, 5, 5, 5]))
    assert even["normalised_entropy"] == pytest.approx(1.0) and even["largest_decile_share"] == pytest.approx(0.25)
    skewed = balance_stats(np.array([97, 1, 1, 1, 0]))
    assert skewed["normalised_entropy"] < 0.2 and skewed["empty"] == 1 and skewed["largest"] == 97


# --- the Chinese-CLIP format ------------------------------------------------------------------
def _jpeg(colour, size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_retrieval_set_round_trip_in_chinese_clip_format(tmp_path):
    from cn_clip.eval.evaluation import read_reference

    images = [(1076345, _jpeg("red")), (517602, _jpeg("green")), (42, _jpeg("blue"))]
    texts = [(8428, "高级感托特包斜挎", [1076345, 517602]), (8429, "蓝色的天空", [42]), (8430, "没有图片的文本", [])]
    directory = write_retrieval_set(tmp_path / "muge", "valid", texts, images)
    # the files are exactly what Chinese-CLIP's tools read
    assert read_reference(str(directory / "valid_texts.jsonl"))[8428] == [1076345, 517602]
    first = (directory / "valid_imgs.tsv").read_text().splitlines()[0].split("\t")
    assert first[0] == "1076345" and base64.b64decode(first[1]) == images[0][1]

    data = read_retrieval_set(directory)  # auto: no test split here, so valid
    assert data.split == "valid" and data.texts == ["高级感托特包斜挎", "蓝色的天空"]
    assert data.image_ids == ["1076345", "517602", "42"] and data.text_images == [[0, 1], [2]]
    assert data.images[2] == images[2][1] and len(data.images) == 3
    assert data.skipped == {"text_without_images": 1}


def test_unlabelled_test_split_falls_back_to_valid_and_explicit_split_is_an_error(tmp_path):
    directory = write_retrieval_set(tmp_path / "muge", "valid", [(1, "一只猫", [7])], [(7, _jpeg("red"))])
    write_retrieval_set(directory, "test", [(2, "一只狗", [])], [(8, _jpeg("blue"))])  # MUGE's test has no ground truth
    assert read_retrieval_set(directory).split == "valid"
    with pytest.raises(BenchmarkFormatError, match="no text lists an image"):
        read_retrieval_set(directory, "test")
    with pytest.raises(BenchmarkFormatError, match="found splits: test, valid"):
        read_retrieval_set(directory, "train")


@pytest.mark.parametrize("line, message", [
    ("{not json", r"texts.jsonl:2: not a JSON object"),
    ('{"text": "缺少编号", "image_ids": [1]}', r"texts.jsonl:2: expected"),
    ('{"text_id": 1, "text": "重复", "image_ids": [1]}', r"texts.jsonl:2: text_id 1 appears twice"),
    ('{"text_id": 2, "text": "未知图片", "image_ids": [99]}', r"text 2 names images missing"),
    ('{"text_id": 2.5, "text": "小数编号", "image_ids": [1]}', r"texts.jsonl:2: text_id must be an integer"),
    ('{"text_id": 2, "text": "列表", "image_ids": 1}', r"texts.jsonl:2: image_ids must be a list"),
])
def test_malformed_retrieval_sets_are_clear_errors(tmp_path, line, message):
    directory = write_retrieval_set(tmp_path / "bad", "test", [(1, "一只猫", [1])], [(1, _jpeg("red"))])
    with open(directory / "test_texts.jsonl", "a", encoding="utf-8") as f:
        f.write(line + "\n")
    with pytest.raises(BenchmarkFormatError, match=message):
        read_retrieval_set(directory, "test")


def test_broken_image_lines_are_clear_errors(tmp_path):
    directory = write_retrieval_set(tmp_path / "bad", "test", [(1, "一只猫", [1])], [(1, _jpeg("red"))])
    tsv = directory / "test_imgs.tsv"
    tsv.write_text(tsv.read_text() + "1\tAAAA\n")
    with pytest.raises(BenchmarkFormatError, match=r"imgs.tsv:2: image id 1 appears twice"):
        read_retrieval_set(directory, "test")
    tsv.write_text("1 no tab here\n")
    with pytest.raises(BenchmarkFormatError, match=r"imgs.tsv:1: expected"):
        read_retrieval_set(directory, "test")
    tsv.write_text("1\t%%%not base64%%%\n")
    data = read_retrieval_set(directory, "test")  # images are read when the model needs them
    with pytest.raises(BenchmarkFormatError, match="not valid base64"):
        data.images[0]


def test_zero_shot_set_in_chinese_clip_layout(tmp_path):
    labels = (REALWORLD / "chinese-clip" / "label_cn.txt").read_text(encoding="utf-8").splitlines()[:12]
    pokemon = (REALWORLD / "chinese-clip" / "pokemon.jpeg").read_bytes()
    directory = write_zeroshot_set(tmp_path / "imagenet-mini", labels, [(0, "a.jpeg", pokemon), (11, "b.jpg", _jpeg("red"))])
    assert (directory / "test" / "000" / "a.jpeg").is_file() and (directory / "test" / "011" / "b.jpg").is_file()
    (directory / "test" / "011" / "notes.txt").write_text("not an image")
    data = read_zeroshot_set(directory)
    assert data.classnames[0] == "丁鲷" and data.labels == [0, 11] and data.images[0] == pokemon
    assert data.skipped == {"not_an_image_file": 1}
    assert discover_sets(tmp_path) == [("zero_shot", directory)]

    (directory / "test" / "012").mkdir()
    with pytest.raises(BenchmarkFormatError, match="class 12, but label_cn.txt has 12 lines"):
        read_zeroshot_set(directory)
    (directory / "test" / "012").rmdir()
    (directory / "test" / "cats").mkdir()
    with pytest.raises(BenchmarkFormatError, match="named by class number"):
        read_zeroshot_set(directory)


def test_discovery_names_what_is_missing(tmp_path):
    with pytest.raises(BenchmarkFormatError, match="does not exist"):
        discover_sets(tmp_path / "nowhere")
    with pytest.raises(BenchmarkFormatError, match="no benchmark set"):
        discover_sets(tmp_path)


def test_smoke_sets_label_images_by_dominant_colour(tmp_path):
    images = [_jpeg((200, 30, 30)), _jpeg((20, 180, 40)), _jpeg((10, 20, 220)), _jpeg((90, 10, 200))]
    assert [dominant_colour(b) for b in images] == [0, 1, 2, 2]
    retrieval, zeroshot = build_smoke_sets(tmp_path, ["红色的方块", "绿色的方块", "蓝色的方块", "紫色的方块"], images)
    pairs = read_retrieval_set(retrieval, "test")
    assert pairs.text_images == [[0], [1], [2], [3]] and pairs.images[3] == images[3]
    colours = read_zeroshot_set(zeroshot)
    assert tuple(colours.classnames) == COLOUR_CLASSES and colours.labels == [0, 1, 2, 2]


# --- the model's side: text-only and image-only encoding ------------------------------------------
def test_image_and_text_encoders_agree_with_pair_embedding_and_name_bad_images():
    from danqing_assets.curation.embed.clip_model import ClipConfig, load_clip
    from danqing_assets.curation.embed.embedder import embed_pairs, encode_images, encode_texts
    from danqing_assets.curation.evaluation.evaluate import evaluate_zeroshot, prompt_templates
    from danqing_assets.curation.evaluation.benchmark_sets import ZeroShotSet

    clip = load_clip(ClipConfig(arch="RN50", allow_random_weights=True))
    photo = (REALWORLD / "chinese-clip" / "pokemon.jpeg").read_bytes()
    pairs = embed_pairs(clip, [photo, _jpeg("red")], ["皮卡丘", "红色"], batch_size=2, workers=0)
    images = encode_images(clip, [photo, _jpeg("red")], batch_size=2, workers=0)
    texts = encode_texts(clip, ["皮卡丘", "红色"], batch_size=1)
    assert images.dtype == np.float32 and np.allclose(images, pairs.image, atol=2e-3)
    assert np.allclose(texts, pairs.text, atol=2e-3)
    with pytest.raises(ValueError, match="image 'broken.jpg' cannot be decoded"):
        encode_images(clip, [photo, b"not an image"], names=["pokemon", "broken.jpg"], workers=0)

    # Chinese-CLIP README's zero-shot example, on random weights: only the plumbing is checked
    names = ["杰尼龟", "妙蛙种子", "小火龙", "皮卡丘"]
    data = ZeroShotSet("readme", "test", names, ["pokemon.jpeg"], [photo], [3])
    result = evaluate_zeroshot(clip, data, prompt_templates("normal"), workers=0)
    assert result["classes"] == 4 and result["images"] == 1 and result["top1"] in (0.0, 100.0)
    assert len(prompt_templates("openai")) > 100 and prompt_templates("normal")[0]("猫") == "猫的图片"
