"""Memory tools for memory-agent episodes (StateLM): the call format, the episode's memory store (JSON) and the
tools that operate on it. Tools are our code operating on data, never model-written code; nothing here uses Ray.

    call   <- parse_call(model text)              one JSON object in a <tool_call> block
    result <- run_tool(call, store, view)         text for the model (error results are counted, never raised)
"""
