"""The OpenAI Agents SDK (`openai-agents`) runs an agent with one function tool against Cinder's
Responses API (OpenAIResponsesModel with a client whose base URL is Cinder), end to end."""

import asyncio

from agents import Agent, ModelSettings, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

CHAT = "smollm2-135m-instruct"


def run_weather_agent(base_url, instructions, max_turns, **agent_options):
    """Runs an agent whose one tool reports the weather (its first call forced); the cities the
    tool was called with, and the run's result."""
    seen = []

    @function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        seen.append(city)
        return f"It is sunny and 21 C in {city}."

    # Traces would go to OpenAI's servers: nothing leaves this machine.
    set_tracing_disabled(True)

    async def run():
        client = AsyncOpenAI(base_url=base_url, api_key="sk-anything", max_retries=0)
        agent = Agent(
            name="weather",
            instructions=instructions,
            tools=[get_weather],
            model=OpenAIResponsesModel(model=CHAT, openai_client=client),
            model_settings=ModelSettings(tool_choice="required", temperature=0, max_tokens=64),
            **agent_options,
        )
        try:
            return await Runner.run(agent, "What is the weather in Tokyo?", max_turns=max_turns)
        finally:
            await client.close()

    return seen, asyncio.run(run())


def test_an_agent_calls_its_function_tool_through_the_responses_api(base_url):
    seen, result = run_weather_agent(base_url, "Answer weather questions with the get_weather tool.", 3,
                                     tool_use_behavior="stop_on_first_tool")
    assert len(seen) == 1 and seen[0]
    assert result.final_output == f"It is sunny and 21 C in {seen[0]}."


def test_an_agent_reads_its_tools_result_and_answers(base_url):
    """The whole loop: a forced call, the tool's output sent back as input items (the Agents
    SDK replays the history itself, ids and statuses included), and a text answer."""
    seen, result = run_weather_agent(
        base_url, "Answer weather questions with the get_weather tool, then answer in one sentence.", 4)
    assert seen
    assert isinstance(result.final_output, str) and result.final_output.strip()
    kinds = [item.type for item in result.new_items]
    assert kinds[:2] == ["tool_call_item", "tool_call_output_item"], kinds
    assert kinds[-1] == "message_output_item", kinds
