"""PARL reward terms against values computed by hand for a swarm, a serial and a failed rollout.

The three rollouts of one group (epoch 0 of 3, so λ_aux = 0.1):

* swarm: one stage of 4 sub-agents, all finished; succeeded with quality 1.0.
  r_parallel = 1 - 1/4 = 0.75, r_finish = 4/4 = 1, R = 0.1*0.75 + 0.9*1*1.0 = 0.975.
* serial: four stages of 1 sub-agent, all finished; succeeded with quality 1.0.
  r_parallel = 1 - 4/4 = 0, r_finish = 1, R = 0.9.
* failed: one stage of 4 sub-agents of which 2 finished, then BudgetExceeded; quality 0.5.
  r_parallel = 1 - 1/2 = 0.5, r_finish = 2/4 = 0.5, I[success] = 0, R = 0.1*0.5 = 0.05.

In fortieths R = 39, 36, 2: mean = 77/120, deviations 40/120, 31/120, -71/120, population std
= sqrt((40² + 31² + 71²) / 3) / 120 = sqrt(2534) / 120; advantages = 40, 31, -71 over
sqrt(2534) = 50.338852: 0.794615, 0.615827, -1.410441.
"""

from __future__ import annotations

import pytest

from kswarm.rollouts import (
    LambdaSchedule,
    RolloutOutcome,
    group_advantages,
    is_success,
    reward_terms,
)
from kswarm.rollouts.rewards import r_finish, r_parallel

SWARM = RolloutOutcome(phase="Succeeded", quality=1.0, finished_per_stage=[4], spawned=4)
SERIAL = RolloutOutcome(phase="Succeeded", quality=1.0, finished_per_stage=[1, 1, 1, 1], spawned=4)
FAILED = RolloutOutcome(phase="Failed", quality=0.5, finished_per_stage=[2], spawned=4)


@pytest.mark.parametrize(
    ("outcome", "par", "fin", "success", "reward"),
    [
        pytest.param(SWARM, 0.75, 1.0, True, 0.975, id="swarm"),
        pytest.param(SERIAL, 0.0, 1.0, True, 0.9, id="serial"),
        pytest.param(FAILED, 0.5, 0.5, False, 0.05, id="failed"),
    ],
)
def test_each_term_matches_the_hand_computed_value(
    outcome: RolloutOutcome, par: float, fin: float, success: bool, reward: float
) -> None:
    terms = reward_terms(outcome, epoch=0, epochs=3)
    assert terms.lambda_aux == 0.1
    assert terms.r_parallel == pytest.approx(par)
    assert terms.r_finish == pytest.approx(fin)
    assert terms.success is success
    assert terms.quality == outcome.quality
    assert terms.reward == pytest.approx(reward)


def test_group_advantage_is_reward_minus_mean_over_population_std() -> None:
    rewards = [reward_terms(o, epoch=0, epochs=3).reward for o in (SWARM, SERIAL, FAILED)]
    assert group_advantages(rewards) == pytest.approx([0.794615, 0.615827, -1.410441], abs=2e-6)


def test_equal_rewards_give_zero_advantages_not_a_division_by_zero() -> None:
    assert group_advantages([0.9, 0.9, 0.9]) == [0.0, 0.0, 0.0]
    assert group_advantages([]) == []


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [
        pytest.param(0, 0.1, id="first"),
        pytest.param(2, 0.05, id="middle"),
        pytest.param(4, 0.0, id="last"),
    ],
)
def test_lambda_anneals_linearly_from_start_to_end(epoch: int, expected: float) -> None:
    assert LambdaSchedule().at(epoch, 5) == pytest.approx(expected)


def test_the_schedule_is_configurable() -> None:
    schedule = LambdaSchedule(start=0.3, end=0.1)
    assert schedule.at(1, 3) == pytest.approx(0.2)
    assert reward_terms(SWARM, epoch=1, epochs=3, schedule=schedule).reward == pytest.approx(
        0.2 * 0.75 + 0.8 * 1.0
    )


def test_at_the_last_epoch_swarm_and_serial_earn_the_same_reward() -> None:
    swarm = reward_terms(SWARM, epoch=2, epochs=3)
    serial = reward_terms(SERIAL, epoch=2, epochs=3)
    assert swarm.lambda_aux == serial.lambda_aux == 0.0
    assert swarm.reward == serial.reward == 1.0


@pytest.mark.parametrize(
    ("epoch", "epochs"), [pytest.param(3, 3, id="past-the-end"), pytest.param(0, 0, id="no-epochs")]
)
def test_an_epoch_outside_the_run_is_refused(epoch: int, epochs: int) -> None:
    with pytest.raises(ValueError, match="epoch"):
        LambdaSchedule().at(epoch, epochs)


def test_idle_sub_agents_earn_no_parallelism() -> None:
    assert r_parallel([0, 0]) == 0.0
    assert r_finish(0, 5) == 0.0
    assert r_finish(0, 0) == 0.0


def test_success_needs_the_threshold_when_one_is_set() -> None:
    assert is_success("Succeeded", 0.7, None)
    assert not is_success("Succeeded", 0.7, 0.8)
    assert is_success("Succeeded", 0.8, 0.8)
    assert not is_success("Failed", 1.0, None)
    assert not is_success("Succeeded", None, 0.5)
